//! ACL checks of the admin APIs whose requests list resources: the resources the principal
//! may not act on are taken out of the request before its handler runs, and answered here
//! with Kafka's authorization error (the handler never sees them). The operations are
//! Kafka's (`KafkaApis` / `ControllerApis`).

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest,
};
use strata_cluster::MetadataImage;
use strata_security::acl::{Operation, ResourceType, CLUSTER_NAME};

use crate::authorizer::Authz;
use crate::errors;

/// Config resource types (Kafka's `ConfigResource.Type`).
const CONFIG_TOPIC: i8 = 2;

/// The ACL resource a config resource is checked against: a topic, else the cluster (BROKER
/// and BROKER_LOGGER resources).
fn config_resource(resource_type: i8, name: &str) -> (ResourceType, String) {
    if resource_type == CONFIG_TOPIC {
        (ResourceType::Topic, name.to_string())
    } else {
        (ResourceType::Cluster, CLUSTER_NAME.to_string())
    }
}

/// CREATE on the cluster, or on each topic.
pub fn create_topics(authz: &Authz, r: &mut CreateTopicsRequest) -> Vec<CreatableTopicResult> {
    if !authz.enforced() || authz.sees(Operation::Create, ResourceType::Cluster, CLUSTER_NAME) {
        return Vec::new();
    }
    let mut denied = Vec::new();
    r.topics.retain(|t| {
        let ok = authz.topic(Operation::Create, &t.name.0);
        if !ok {
            denied.push(
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            );
        }
        ok
    });
    denied
}

/// DELETE on each topic (named, or by id).
pub fn delete_topics(
    authz: &Authz,
    image: &MetadataImage,
    r: &mut DeleteTopicsRequest,
) -> Vec<DeletableTopicResult> {
    let mut denied = Vec::new();
    if !authz.enforced() {
        return denied;
    }
    r.topic_names.retain(|name| {
        let ok = authz.topic(Operation::Delete, &name.0);
        if !ok {
            denied.push(
                DeletableTopicResult::default()
                    .with_name(Some(name.clone()))
                    .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED),
            );
        }
        ok
    });
    r.topics.retain(|t| {
        let name = match (&t.name, image.topic_by_id(&t.topic_id)) {
            (Some(n), _) => Some(n.0.to_string()),
            (None, Some(topic)) => Some(topic.name.clone()),
            (None, None) => None,
        };
        // An unknown id is left to the handler (UNKNOWN_TOPIC_ID).
        let ok = name
            .as_deref()
            .is_none_or(|n| authz.topic(Operation::Delete, n));
        if !ok {
            denied.push(
                DeletableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED),
            );
        }
        ok
    });
    denied
}

/// ALTER on each topic.
pub fn create_partitions(
    authz: &Authz,
    r: &mut CreatePartitionsRequest,
) -> Vec<CreatePartitionsTopicResult> {
    take_denied(&mut r.topics, |t| {
        (!authz.topic(Operation::Alter, &t.name.0)).then(|| {
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
        })
    })
}

/// DELETE on each topic.
pub fn delete_records(
    authz: &Authz,
    r: &mut DeleteRecordsRequest,
) -> Vec<DeleteRecordsTopicResult> {
    take_denied(&mut r.topics, |t| {
        (!authz.topic(Operation::Delete, &t.name.0)).then(|| {
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
                        })
                        .collect(),
                )
        })
    })
}

fn config_denied_code(resource_type: ResourceType) -> i16 {
    if resource_type == ResourceType::Topic {
        errors::TOPIC_AUTHORIZATION_FAILED
    } else {
        errors::CLUSTER_AUTHORIZATION_FAILED
    }
}

/// Takes out of `items` those `denied` answers for (Some: the answer to give instead).
fn take_denied<T, R>(items: &mut Vec<T>, mut denied: impl FnMut(&T) -> Option<R>) -> Vec<R> {
    let mut out = Vec::new();
    items.retain(|item| match denied(item) {
        Some(answer) => {
            out.push(answer);
            false
        }
        None => true,
    });
    out
}

/// The error code for a config resource `operation` is denied on, if it is.
fn config_denied(
    authz: &Authz,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Option<i16> {
    let (rt, resource) = config_resource(resource_type, name);
    (!authz.can(operation, rt, &resource)).then(|| config_denied_code(rt))
}

/// DESCRIBE_CONFIGS on each topic or on the cluster.
pub fn describe_configs(
    authz: &Authz,
    r: &mut DescribeConfigsRequest,
) -> Vec<DescribeConfigsResult> {
    take_denied(&mut r.resources, |res| {
        let code = config_denied(
            authz,
            Operation::DescribeConfigs,
            res.resource_type,
            &res.resource_name,
        )?;
        Some(
            DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone())
                .with_error_code(code),
        )
    })
}

/// ALTER_CONFIGS on each topic or on the cluster.
pub fn alter_configs(
    authz: &Authz,
    r: &mut AlterConfigsRequest,
) -> Vec<alter_configs_response::AlterConfigsResourceResponse> {
    take_denied(&mut r.resources, |res| {
        let code = config_denied(
            authz,
            Operation::AlterConfigs,
            res.resource_type,
            &res.resource_name,
        )?;
        Some(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone())
                .with_error_code(code),
        )
    })
}

/// ALTER_CONFIGS on each topic or on the cluster.
pub fn incremental_alter_configs(
    authz: &Authz,
    r: &mut IncrementalAlterConfigsRequest,
) -> Vec<incremental_alter_configs_response::AlterConfigsResourceResponse> {
    take_denied(&mut r.resources, |res| {
        let code = config_denied(
            authz,
            Operation::AlterConfigs,
            res.resource_type,
            &res.resource_name,
        )?;
        Some(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone())
                .with_error_code(code),
        )
    })
}

/// The APIs that act on the cluster as a whole: the operation each needs on the CLUSTER
/// resource, and the answer when it is denied (Kafka's CLUSTER_AUTHORIZATION_FAILED in the
/// shape of each response). None: the request is not one of them, or it is allowed.
pub fn cluster_denied(
    authz: &Authz,
    request: &strata_protocol::Request,
    cid: i32,
    key: kafka_protocol::messages::ApiKey,
    version: i16,
) -> Option<super::Outcome> {
    use kafka_protocol::messages::*;
    use strata_protocol::Request as R;
    if !authz.enforced() {
        return None;
    }
    let operation = match request {
        R::ElectLeaders(_)
        | R::AlterPartitionReassignments(_)
        | R::AlterUserScramCredentials(_)
        | R::CreateAcls(_)
        | R::DeleteAcls(_) => Operation::Alter,
        R::ListPartitionReassignments(_)
        | R::DescribeLogDirs(_)
        | R::DescribeQuorum(_)
        | R::DescribeUserScramCredentials(_)
        | R::DescribeAcls(_) => Operation::Describe,
        R::WriteTxnMarkers(_) => Operation::ClusterAction,
        R::DescribeClientQuotas(_) => Operation::DescribeConfigs,
        R::AlterClientQuotas(_) => Operation::AlterConfigs,
        _ => return None,
    };
    if authz.cluster(operation) {
        return None;
    }
    let code = errors::CLUSTER_AUTHORIZATION_FAILED;
    let message = Some(super::str(&format!(
        "{} on the cluster is not allowed",
        operation.name()
    )));
    Some(match request {
        R::ElectLeaders(r) if version == 0 => {
            let results = r
                .topic_partitions
                .iter()
                .flatten()
                .map(|t| {
                    elect_leaders_response::ReplicaElectionResult::default()
                        .with_topic(t.topic.clone())
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|&p| {
                                    elect_leaders_response::PartitionResult::default()
                                        .with_partition_id(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            super::encode(cid, key, version, &
                ElectLeadersResponse::default().with_replica_election_results(results),
            )
        }
        R::ElectLeaders(_) => {
            super::encode(cid, key, version, &ElectLeadersResponse::default().with_error_code(code))
        }
        R::AlterPartitionReassignments(_) => super::encode(cid, key, version, &
            AlterPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(message),
        ),
        R::ListPartitionReassignments(_) => super::encode(cid, key, version, &
            ListPartitionReassignmentsResponse::default()
                .with_error_code(code)
                .with_error_message(message),
        ),
        // Before v3 there is no error code: an empty answer, as Kafka gives.
        R::DescribeLogDirs(_) => super::encode(cid, key, version, &
            DescribeLogDirsResponse::default().with_error_code(if version >= 3 { code } else { 0 }),
        ),
        R::DescribeQuorum(_) => super::encode(cid, key, version, &
            DescribeQuorumResponse::default()
                .with_error_code(code)
                .with_error_message(if version >= 2 { message } else { None }),
        ),
        R::DescribeUserScramCredentials(_) => super::encode(cid, key, version, &
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(code)
                .with_error_message(message),
        ),
        R::AlterUserScramCredentials(r) => {
            let mut users: Vec<String> = r
                .deletions
                .iter()
                .map(|d| d.name.to_string())
                .chain(r.upsertions.iter().map(|u| u.name.to_string()))
                .collect();
            users.sort();
            users.dedup();
            super::encode(cid, key, version, &
                AlterUserScramCredentialsResponse::default().with_results(
                    users
                        .iter()
                        .map(|u| {
                            alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                                .with_user(super::str(u))
                                .with_error_code(code)
                                .with_error_message(message.clone())
                        })
                        .collect(),
                ),
            )
        }
        R::WriteTxnMarkers(r) => super::encode(cid, key, version, &
            WriteTxnMarkersResponse::default().with_markers(
                r.markers
                    .iter()
                    .map(|m| {
                        write_txn_markers_response::WritableTxnMarkerResult::default()
                            .with_producer_id(m.producer_id)
                            .with_topics(
                                m.topics
                                    .iter()
                                    .map(|t| {
                                        write_txn_markers_response::WritableTxnMarkerTopicResult::default()
                                            .with_name(t.name.clone())
                                            .with_partitions(
                                                t.partition_indexes
                                                    .iter()
                                                    .map(|&p| {
                                                        write_txn_markers_response::WritableTxnMarkerPartitionResult::default()
                                                            .with_partition_index(p)
                                                            .with_error_code(code)
                                                    })
                                                    .collect(),
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        R::CreateAcls(r) => super::encode(cid, key, version, &
            CreateAclsResponse::default().with_results(
                r.creations
                    .iter()
                    .map(|_| {
                        create_acls_response::AclCreationResult::default()
                            .with_error_code(code)
                            .with_error_message(message.clone())
                    })
                    .collect(),
            ),
        ),
        R::DeleteAcls(r) => super::encode(cid, key, version, &
            DeleteAclsResponse::default().with_filter_results(
                r.filters
                    .iter()
                    .map(|_| {
                        delete_acls_response::DeleteAclsFilterResult::default()
                            .with_error_code(code)
                            .with_error_message(message.clone())
                    })
                    .collect(),
            ),
        ),
        R::DescribeClientQuotas(_) => super::encode(
            cid,
            key,
            version,
            &DescribeClientQuotasResponse::default()
                .with_error_code(code)
                .with_error_message(message),
        ),
        R::AlterClientQuotas(r) => super::encode(
            cid,
            key,
            version,
            &AlterClientQuotasResponse::default().with_entries(
                r.entries
                    .iter()
                    .map(|e| {
                        alter_client_quotas_response::EntryData::default()
                            .with_error_code(code)
                            .with_error_message(message.clone())
                            .with_entity(
                                e.entity
                                    .iter()
                                    .map(|x| {
                                        alter_client_quotas_response::EntityData::default()
                                            .with_entity_type(x.entity_type.clone())
                                            .with_entity_name(x.entity_name.clone())
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        R::DescribeAcls(_) => super::encode(cid, key, version, &
            DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(message),
        ),
        _ => return None,
    })
}

/// Group and transaction APIs about one group or transactional id: the operation each needs
/// on it, and the whole answer when it is denied. None: allowed (or not one of them).
pub fn resource_denied(
    authz: &Authz,
    request: &strata_protocol::Request,
    cid: i32,
    key: kafka_protocol::messages::ApiKey,
    version: i16,
) -> Option<super::Outcome> {
    use kafka_protocol::messages::*;
    use strata_protocol::Request as R;
    if !authz.enforced() {
        return None;
    }
    let group =
        |op, g: &GroupId| (!authz.group(op, &g.0)).then_some(errors::GROUP_AUTHORIZATION_FAILED);
    let txn = |op, t: &TransactionalId| {
        (!authz.transactional_id(op, &t.0)).then_some(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    };
    let code = match request {
        R::JoinGroup(r) => group(Operation::Read, &r.group_id),
        R::SyncGroup(r) => group(Operation::Read, &r.group_id),
        R::Heartbeat(r) => group(Operation::Read, &r.group_id),
        R::LeaveGroup(r) => group(Operation::Read, &r.group_id),
        R::ConsumerGroupHeartbeat(r) => group(Operation::Read, &r.group_id).or_else(|| {
            // Kafka also wants DESCRIBE on every topic the member subscribes to by name.
            r.subscribed_topic_names
                .iter()
                .flatten()
                .any(|t| !authz.topic(Operation::Describe, t))
                .then_some(errors::TOPIC_AUTHORIZATION_FAILED)
        }),
        R::InitProducerId(r) => match &r.transactional_id {
            Some(t) => txn(Operation::Write, t),
            // KIP-679: IDEMPOTENT_WRITE on the cluster, or WRITE on any topic.
            None => (!authz.sees(
                Operation::IdempotentWrite,
                ResourceType::Cluster,
                CLUSTER_NAME,
            ) && !authz.can_any(Operation::Write, ResourceType::Topic))
            .then(|| {
                authz.cluster(Operation::IdempotentWrite);
                errors::CLUSTER_AUTHORIZATION_FAILED
            }),
        },
        R::AddOffsetsToTxn(r) => txn(Operation::Write, &r.transactional_id)
            .or_else(|| group(Operation::Read, &r.group_id)),
        R::EndTxn(r) => txn(Operation::Write, &r.transactional_id),
        _ => None,
    }?;
    Some(match request {
        R::JoinGroup(_) => super::encode(
            cid,
            key,
            version,
            &JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1),
        ),
        R::SyncGroup(_) => super::encode(
            cid,
            key,
            version,
            &SyncGroupResponse::default().with_error_code(code),
        ),
        R::Heartbeat(_) => super::encode(
            cid,
            key,
            version,
            &HeartbeatResponse::default().with_error_code(code),
        ),
        R::LeaveGroup(_) => super::encode(
            cid,
            key,
            version,
            &LeaveGroupResponse::default().with_error_code(code),
        ),
        R::ConsumerGroupHeartbeat(_) => super::encode(
            cid,
            key,
            version,
            &ConsumerGroupHeartbeatResponse::default().with_error_code(code),
        ),
        R::InitProducerId(_) => super::encode(
            cid,
            key,
            version,
            &InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        R::AddOffsetsToTxn(_) => super::encode(
            cid,
            key,
            version,
            &AddOffsetsToTxnResponse::default().with_error_code(code),
        ),
        R::EndTxn(_) => super::encode(
            cid,
            key,
            version,
            &EndTxnResponse::default().with_error_code(code),
        ),
        _ => return None,
    })
}

fn denied_commit_topic(
    name: &kafka_protocol::messages::TopicName,
    partitions: impl Iterator<Item = i32>,
    code: i16,
) -> kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic {
    use kafka_protocol::messages::offset_commit_response::*;
    OffsetCommitResponseTopic::default()
        .with_name(name.clone())
        .with_partitions(
            partitions
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p)
                        .with_error_code(code)
                })
                .collect(),
        )
}

/// READ on the group (else every partition fails), READ on each topic.
pub fn offset_commit(
    authz: &Authz,
    r: &mut kafka_protocol::messages::OffsetCommitRequest,
) -> Vec<kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic> {
    let mut denied = Vec::new();
    if !authz.enforced() {
        return denied;
    }
    let group_ok = authz.group(Operation::Read, &r.group_id.0);
    r.topics.retain(|t| {
        let code = if !group_ok {
            errors::GROUP_AUTHORIZATION_FAILED
        } else if !authz.topic(Operation::Read, &t.name.0) {
            errors::TOPIC_AUTHORIZATION_FAILED
        } else {
            return true;
        };
        denied.push(denied_commit_topic(
            &t.name,
            t.partitions.iter().map(|p| p.partition_index),
            code,
        ));
        false
    });
    denied
}

/// WRITE on the transactional id and READ on the group (else every partition fails), READ
/// on each topic.
pub fn txn_offset_commit(
    authz: &Authz,
    r: &mut kafka_protocol::messages::TxnOffsetCommitRequest,
) -> Vec<kafka_protocol::messages::txn_offset_commit_response::TxnOffsetCommitResponseTopic> {
    use kafka_protocol::messages::txn_offset_commit_response::*;
    let mut denied = Vec::new();
    if !authz.enforced() {
        return denied;
    }
    let whole = if !authz.transactional_id(Operation::Write, &r.transactional_id.0) {
        Some(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !authz.group(Operation::Read, &r.group_id.0) {
        Some(errors::GROUP_AUTHORIZATION_FAILED)
    } else {
        None
    };
    r.topics.retain(|t| {
        let code = match whole {
            Some(c) => c,
            None if !authz.topic(Operation::Read, &t.name.0) => errors::TOPIC_AUTHORIZATION_FAILED,
            None => return true,
        };
        denied.push(
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                ),
        );
        false
    });
    denied
}

/// DELETE on the group (else the whole request fails), READ on each topic.
pub fn offset_delete(
    authz: &Authz,
    r: &mut kafka_protocol::messages::OffsetDeleteRequest,
) -> Result<Vec<kafka_protocol::messages::offset_delete_response::OffsetDeleteResponseTopic>, i16> {
    use kafka_protocol::messages::offset_delete_response::*;
    let mut denied = Vec::new();
    if !authz.enforced() {
        return Ok(denied);
    }
    if !authz.group(Operation::Delete, &r.group_id.0) {
        return Err(errors::GROUP_AUTHORIZATION_FAILED);
    }
    r.topics.retain(|t| {
        if authz.topic(Operation::Read, &t.name.0) {
            return true;
        }
        denied.push(
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
                        })
                        .collect(),
                ),
        );
        false
    });
    Ok(denied)
}

/// AddPartitionsToTxn v0-3 from a producer: WRITE on the transactional id and on every
/// topic; if anything is denied nothing is added (the denied partitions say why, the others
/// OPERATION_NOT_ATTEMPTED), as Kafka answers.
pub fn add_partitions_to_txn(
    authz: &Authz,
    r: &kafka_protocol::messages::AddPartitionsToTxnRequest,
    version: i16,
) -> Option<kafka_protocol::messages::AddPartitionsToTxnResponse> {
    use kafka_protocol::messages::add_partitions_to_txn_response::*;
    use kafka_protocol::messages::AddPartitionsToTxnResponse;
    if !authz.enforced() || version > 3 {
        return None;
    }
    let txn_ok = authz.transactional_id(Operation::Write, &r.v3_and_below_transactional_id.0);
    let topic_ok: Vec<bool> = r
        .v3_and_below_topics
        .iter()
        .map(|t| txn_ok && authz.topic(Operation::Write, &t.name.0))
        .collect();
    if txn_ok && topic_ok.iter().all(|ok| *ok) {
        return None;
    }
    let results = r
        .v3_and_below_topics
        .iter()
        .zip(topic_ok)
        .map(|(t, ok)| {
            let code = if !txn_ok {
                errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            } else if !ok {
                errors::TOPIC_AUTHORIZATION_FAILED
            } else {
                errors::OPERATION_NOT_ATTEMPTED
            };
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    Some(AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results))
}

/// DELETE on each group.
pub fn delete_groups(
    authz: &Authz,
    r: &mut kafka_protocol::messages::DeleteGroupsRequest,
) -> Vec<kafka_protocol::messages::delete_groups_response::DeletableGroupResult> {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    take_denied(&mut r.groups_names, |g| {
        (!authz.group(Operation::Delete, &g.0)).then(|| {
            DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(errors::GROUP_AUTHORIZATION_FAILED)
        })
    })
}

/// DESCRIBE on each group described (answers without side effects, so checked after).
pub fn describe_groups(
    authz: &Authz,
    resp: &mut kafka_protocol::messages::DescribeGroupsResponse,
    include_operations: bool,
) {
    use kafka_protocol::messages::describe_groups_response::DescribedGroup;
    for g in resp.groups.iter_mut() {
        if !authz.group(Operation::Describe, &g.group_id.0) {
            *g = DescribedGroup::default()
                .with_group_id(g.group_id.clone())
                .with_error_code(errors::GROUP_AUTHORIZATION_FAILED);
        } else if include_operations {
            g.authorized_operations =
                authz.authorized_operations(ResourceType::Group, &g.group_id.0);
        }
    }
}

pub fn consumer_group_describe(
    authz: &Authz,
    resp: &mut kafka_protocol::messages::ConsumerGroupDescribeResponse,
    include_operations: bool,
) {
    use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
    for g in resp.groups.iter_mut() {
        if !authz.group(Operation::Describe, &g.group_id) {
            *g = DescribedGroup::default()
                .with_group_id(g.group_id.clone())
                .with_error_code(errors::GROUP_AUTHORIZATION_FAILED);
        } else if include_operations {
            g.authorized_operations = authz.authorized_operations(ResourceType::Group, &g.group_id);
        }
    }
}

pub fn describe_transactions(
    authz: &Authz,
    resp: &mut kafka_protocol::messages::DescribeTransactionsResponse,
) {
    use kafka_protocol::messages::describe_transactions_response::TransactionState;
    for t in resp.transaction_states.iter_mut() {
        if !authz.transactional_id(Operation::Describe, &t.transactional_id.0) {
            *t = TransactionState::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_error_code(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
        }
    }
}

/// ListGroups: everything with DESCRIBE on the cluster, else the groups the client may
/// describe.
pub fn list_groups(authz: &Authz, resp: &mut kafka_protocol::messages::ListGroupsResponse) {
    if authz.sees(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
        return;
    }
    resp.groups
        .retain(|g| authz.sees(Operation::Describe, ResourceType::Group, &g.group_id.0));
}

pub fn list_transactions(
    authz: &Authz,
    resp: &mut kafka_protocol::messages::ListTransactionsResponse,
) {
    resp.transaction_states.retain(|t| {
        authz.sees(
            Operation::Describe,
            ResourceType::TransactionalId,
            &t.transactional_id.0,
        )
    });
}

/// DESCRIBE on the group or transactional id looked up.
pub fn find_coordinator(
    authz: &Authz,
    r: &kafka_protocol::messages::FindCoordinatorRequest,
    resp: &mut kafka_protocol::messages::FindCoordinatorResponse,
    version: i16,
) {
    let denied = |key: &str| -> Option<i16> {
        if r.key_type == 1 {
            (!authz.transactional_id(Operation::Describe, key))
                .then_some(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        } else {
            (!authz.group(Operation::Describe, key)).then_some(errors::GROUP_AUTHORIZATION_FAILED)
        }
    };
    if version < 4 {
        if let Some(code) = denied(&r.key) {
            resp.error_code = code;
            resp.node_id = kafka_protocol::messages::BrokerId(-1);
            resp.host = super::str("");
            resp.port = -1;
        }
        return;
    }
    for c in resp.coordinators.iter_mut() {
        if let Some(code) = denied(&c.key) {
            c.error_code = code;
            c.node_id = kafka_protocol::messages::BrokerId(-1);
            c.host = super::str("");
            c.port = -1;
        }
    }
}

/// READ on each topic.
pub fn describe_producers(
    authz: &Authz,
    resp: &mut kafka_protocol::messages::DescribeProducersResponse,
) {
    for t in resp.topics.iter_mut() {
        if !authz.topic(Operation::Read, &t.name.0) {
            for p in t.partitions.iter_mut() {
                p.error_code = errors::TOPIC_AUTHORIZATION_FAILED;
                p.error_message = None;
                p.active_producers.clear();
            }
        }
    }
}

/// OffsetFetch: DESCRIBE on the group; topics the client may not describe are left out of
/// an all-topics answer and refused by name when asked for.
pub fn offset_fetch(
    authz: &Authz,
    asked_all: &[bool],
    resp: &mut kafka_protocol::messages::OffsetFetchResponse,
    group_id: &str,
    version: i16,
) {
    if !authz.enforced() {
        return;
    }
    if version >= 8 {
        for (g, all) in resp.groups.iter_mut().zip(asked_all) {
            if !authz.group(Operation::Describe, &g.group_id.0) {
                g.error_code = errors::GROUP_AUTHORIZATION_FAILED;
                g.topics.clear();
                continue;
            }
            if *all {
                g.topics
                    .retain(|t| authz.sees(Operation::Describe, ResourceType::Topic, &t.name.0));
            } else {
                for t in g.topics.iter_mut() {
                    if !authz.topic(Operation::Describe, &t.name.0) {
                        for p in t.partitions.iter_mut() {
                            p.error_code = errors::TOPIC_AUTHORIZATION_FAILED;
                            p.committed_offset = -1;
                            p.metadata = None;
                        }
                    }
                }
            }
        }
        return;
    }
    if !authz.group(Operation::Describe, group_id) {
        if version >= 2 {
            resp.error_code = errors::GROUP_AUTHORIZATION_FAILED;
            resp.topics.clear();
        } else {
            for p in resp.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                p.error_code = errors::GROUP_AUTHORIZATION_FAILED;
                p.committed_offset = -1;
                p.metadata = None;
            }
        }
        return;
    }
    if asked_all.first().copied().unwrap_or(false) {
        resp.topics
            .retain(|t| authz.sees(Operation::Describe, ResourceType::Topic, &t.name.0));
    } else {
        for t in resp.topics.iter_mut() {
            if !authz.topic(Operation::Describe, &t.name.0) {
                for p in t.partitions.iter_mut() {
                    p.error_code = errors::TOPIC_AUTHORIZATION_FAILED;
                    p.committed_offset = -1;
                    p.metadata = None;
                }
            }
        }
    }
}
