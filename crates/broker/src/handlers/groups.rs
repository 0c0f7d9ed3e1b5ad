//! Group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete, and KIP-848's
//! ConsumerGroupHeartbeat / ConsumerGroupDescribe. Each translates the request for the
//! `strata-group` state machine and its answer back; error codes come from `errors`.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response as cgd;
use kafka_protocol::messages::consumer_group_heartbeat_response as cgh;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_group::{
    CommitPartition, CommitRequest, ConsumerHeartbeat, Effect, GroupError, JoinRequest,
    SyncRequest, TopicInfo,
};

use super::str;
use crate::errors::{self, group_error_code, NONE};
use crate::Broker;

fn code(r: &Result<(), GroupError>) -> i16 {
    match r {
        Ok(()) => NONE,
        Err(e) => group_error_code(e),
    }
}

fn opt_str(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

// ------------------------------------------------------------------ FindCoordinator

pub fn find_coordinator(
    broker: &Arc<Broker>,
    r: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    // The coordinator of a key is the leader of its internal topic partition (created on
    // first use), answered with that broker's advertised endpoint.
    let lookup = |key: &StrBytes| -> Result<(i32, String, i32), (i16, String)> {
        let (topic, ensured) = match r.key_type {
            0 if key.is_empty() => return Err((errors::INVALID_GROUP_ID, "empty group id".into())),
            0 => (crate::groups::OFFSETS_TOPIC, broker.ensure_offsets_topic()),
            1 if key.is_empty() => {
                return Err((errors::INVALID_REQUEST, "empty transactional id".into()))
            }
            1 => (
                crate::txn::TRANSACTION_STATE_TOPIC,
                broker.ensure_transaction_state_topic(),
            ),
            t => return Err((errors::INVALID_REQUEST, format!("unknown key type {t}"))),
        };
        ensured.map_err(|e| (errors::COORDINATOR_NOT_AVAILABLE, e.to_string()))?;
        broker
            .coordinator_endpoint(topic, key, listener)
            .ok_or_else(|| {
                (
                    errors::COORDINATOR_NOT_AVAILABLE,
                    "the coordinator's partition has no live leader".into(),
                )
            })
    };
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in &r.coordinator_keys {
            let mut c = find_coordinator_response::Coordinator::default();
            c.key = key.clone();
            match lookup(key) {
                Ok((node, host, port)) => {
                    c.node_id = BrokerId(node);
                    c.host = str(&host);
                    c.port = port;
                }
                Err((code, message)) => {
                    c.error_code = code;
                    c.error_message = Some(str(&message));
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                }
            }
            resp.coordinators.push(c);
        }
    } else {
        match lookup(&r.key) {
            Ok((node, host, port)) => {
                resp.node_id = BrokerId(node);
                resp.host = str(&host);
                resp.port = port;
            }
            Err((code, message)) => {
                resp.error_code = code;
                if version >= 1 {
                    resp.error_message = Some(str(&message));
                }
                resp.node_id = BrokerId(-1);
                resp.port = -1;
            }
        }
    }
    resp
}

// ------------------------------------------------------------------ JoinGroup / SyncGroup

pub async fn join_group(
    broker: Arc<Broker>,
    r: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let req = JoinRequest {
        group_id: r.group_id.to_string(),
        member_id: r.member_id.to_string(),
        group_instance_id: opt_str(&r.group_instance_id),
        protocol_type: r.protocol_type.to_string(),
        protocols: r
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        session_timeout_ms: r.session_timeout_ms,
        // v0 has no rebalance timeout: it is the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            r.rebalance_timeout_ms
        } else {
            r.session_timeout_ms
        },
        client_id,
        client_host,
        require_known_member_id: version >= 4,
    };
    let (token, rx) = broker.groups.waiter();
    let now = broker.clock.steady_ms();
    let (_, pending) = broker.group_call(|c| ((), c.join(req, token, now)));
    broker.group_complete(pending).await;
    let mut resp = JoinGroupResponse::default();
    match rx.await {
        Ok(Effect::Join { response, .. }) => {
            resp.error_code = response.error.as_ref().map_or(NONE, group_error_code);
            resp.generation_id = response.generation_id;
            resp.protocol_type = response.protocol_type.map(|s| str(&s));
            resp.protocol_name = response.protocol_name.map(|s| str(&s));
            if version < 7 && resp.protocol_name.is_none() {
                resp.protocol_name = Some(StrBytes::default());
            }
            resp.leader = str(&response.leader);
            resp.skip_assignment = response.skip_assignment && version >= 9;
            resp.member_id = str(&response.member_id);
            resp.members = response
                .members
                .into_iter()
                .map(|m| {
                    let mut jm = join_group_response::JoinGroupResponseMember::default();
                    jm.member_id = str(&m.member_id);
                    jm.group_instance_id = m.group_instance_id.map(|s| str(&s));
                    jm.metadata = m.metadata;
                    jm
                })
                .collect();
        }
        _ => {
            resp.error_code = errors::COORDINATOR_NOT_AVAILABLE;
            resp.generation_id = -1;
            if version < 7 {
                resp.protocol_name = Some(StrBytes::default());
            }
        }
    }
    resp
}

pub async fn sync_group(
    broker: Arc<Broker>,
    r: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let req = SyncRequest {
        group_id: r.group_id.to_string(),
        member_id: r.member_id.to_string(),
        generation_id: r.generation_id,
        group_instance_id: opt_str(&r.group_instance_id),
        protocol_type: opt_str(&r.protocol_type),
        protocol_name: opt_str(&r.protocol_name),
        assignments: r
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect(),
    };
    let (token, rx) = broker.groups.waiter();
    let now = broker.clock.steady_ms();
    let (_, pending) = broker.group_call(|c| ((), c.sync(req, token, now)));
    let stored = broker.group_complete(pending).await;
    let mut resp = SyncGroupResponse::default();
    match rx.await {
        Ok(Effect::Sync { response, .. }) => {
            resp.error_code = response.error.as_ref().map_or(NONE, group_error_code);
            if !stored && resp.error_code == NONE {
                // The leader's assignment is not durable: the group must not go on with it.
                resp.error_code = errors::COORDINATOR_NOT_AVAILABLE;
            }
            if version >= 5 {
                resp.protocol_type = response.protocol_type.map(|s| str(&s));
                resp.protocol_name = response.protocol_name.map(|s| str(&s));
            }
            resp.assignment = response.assignment;
        }
        _ => resp.error_code = errors::COORDINATOR_NOT_AVAILABLE,
    }
    resp
}

// ------------------------------------------------------------------ Heartbeat / LeaveGroup

pub async fn heartbeat(broker: Arc<Broker>, r: HeartbeatRequest) -> HeartbeatResponse {
    let now = broker.clock.steady_ms();
    let instance = opt_str(&r.group_instance_id);
    let result = broker.groups.coordinator().heartbeat(
        &r.group_id,
        &r.member_id,
        r.generation_id,
        instance.as_deref(),
        now,
    );
    let mut resp = HeartbeatResponse::default();
    resp.error_code = code(&result);
    resp
}

pub async fn leave_group(
    broker: Arc<Broker>,
    r: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        r.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt_str(&m.group_instance_id)))
            .collect()
    } else {
        vec![(r.member_id.to_string(), None)]
    };
    let now = broker.clock.steady_ms();
    let group_id = r.group_id.to_string();
    let (result, pending) = broker.group_call(|c| c.leave(&group_id, &members, now));
    broker.group_complete(pending).await;
    let mut resp = LeaveGroupResponse::default();
    match result {
        Err(e) => resp.error_code = group_error_code(&e),
        Ok(results) if version >= 3 => {
            resp.members = members
                .iter()
                .zip(results)
                .map(|((id, instance), r)| {
                    let mut m = leave_group_response::MemberResponse::default();
                    m.member_id = str(id);
                    m.group_instance_id = instance.as_ref().map(|s| str(s));
                    m.error_code = code(&r);
                    m
                })
                .collect();
        }
        Ok(results) => resp.error_code = code(&results[0]),
    }
    resp
}

// ------------------------------------------------------------------ offsets

pub async fn offset_commit(broker: Arc<Broker>, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let req = CommitRequest {
        group_id: r.group_id.to_string(),
        generation_id_or_member_epoch: r.generation_id_or_member_epoch,
        member_id: r.member_id.to_string(),
        group_instance_id: opt_str(&r.group_instance_id),
        topics: r
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    t.partitions
                        .iter()
                        .map(|p| CommitPartition {
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: opt_str(&p.committed_metadata),
                        })
                        .collect(),
                )
            })
            .collect(),
    };
    let now = broker.clock.steady_ms();
    let b = broker.clone();
    let high_watermark = move |topic: &str, p: i32| b.high_watermark_if_known(topic, p);
    let (result, pending) = broker.group_call(|c| c.commit_offsets(req, now, &high_watermark));
    let stored = broker.group_complete(pending).await;
    let result = result.map_err(|e| group_error_code(&e));
    let mut resp = OffsetCommitResponse::default();
    for t in &r.topics {
        let mut rt = offset_commit_response::OffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        for (i, p) in t.partitions.iter().enumerate() {
            let mut rp = offset_commit_response::OffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = commit_code(&result, &t.name, i, stored);
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    resp
}

/// The error code of the `index`-th partition of `topic` in an (Txn)OffsetCommit answer:
/// the request's error, else the partition's, else COORDINATOR_NOT_AVAILABLE when the
/// records could not be made durable.
pub(super) fn commit_code(
    result: &Result<strata_group::CommitResults, i16>,
    topic: &str,
    index: usize,
    stored: bool,
) -> i16 {
    match result {
        Err(code) => *code,
        Ok(results) => match results
            .iter()
            .find(|(n, _)| n == topic)
            .and_then(|(_, p)| p.get(index))
        {
            Some((_, Some(e))) => group_error_code(e),
            _ if !stored => errors::COORDINATOR_NOT_AVAILABLE,
            _ => NONE,
        },
    }
}

type FetchTopics = Option<Vec<(String, Vec<i32>)>>;

fn fetch_group(
    broker: &Broker,
    group_id: &str,
    topics: &FetchTopics,
    member: Option<(&str, i32)>,
    require_stable: bool,
) -> (
    i16,
    Vec<(
        String,
        Vec<offset_fetch_response::OffsetFetchResponsePartitions>,
    )>,
) {
    let result = broker
        .groups
        .coordinator()
        .fetch_offsets(group_id, topics.as_deref(), member);
    match result {
        Err(e) => (group_error_code(&e), vec![]),
        Ok(offsets) => {
            let mut out: Vec<(
                String,
                Vec<offset_fetch_response::OffsetFetchResponsePartitions>,
            )> = Vec::new();
            for o in offsets {
                let mut p = offset_fetch_response::OffsetFetchResponsePartitions::default();
                p.partition_index = o.partition;
                if require_stable && o.unstable {
                    // KIP-447: an open transaction holds an offset for it; retriable.
                    p.error_code = errors::UNSTABLE_OFFSET_COMMIT;
                }
                match o.offset {
                    Some(v) => {
                        p.committed_offset = v.offset;
                        p.committed_leader_epoch = v.leader_epoch;
                        p.metadata = Some(str(&v.metadata));
                    }
                    None => {
                        p.committed_offset = -1;
                        p.committed_leader_epoch = -1;
                        p.metadata = Some(StrBytes::default());
                    }
                }
                match out.last_mut() {
                    Some((t, ps)) if *t == o.topic => ps.push(p),
                    _ => out.push((o.topic, vec![p])),
                }
            }
            (NONE, out)
        }
    }
}

pub fn offset_fetch(
    broker: &Arc<Broker>,
    r: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        for g in &r.groups {
            let topics: FetchTopics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let member_id = opt_str(&g.member_id);
            let member = member_id.as_deref().map(|m| (m, g.member_epoch));
            let (error_code, topics) =
                fetch_group(broker, &g.group_id, &topics, member, r.require_stable);
            let mut rg = offset_fetch_response::OffsetFetchResponseGroup::default();
            rg.group_id = g.group_id.clone();
            rg.error_code = error_code;
            rg.topics = topics
                .into_iter()
                .map(|(name, partitions)| {
                    let mut t = offset_fetch_response::OffsetFetchResponseTopics::default();
                    t.name = TopicName(str(&name));
                    t.partitions = partitions;
                    t
                })
                .collect();
            resp.groups.push(rg);
        }
        return resp;
    }
    let topics: FetchTopics = r.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let (error_code, topics) = fetch_group(broker, &r.group_id, &topics, None, r.require_stable);
    if version >= 2 {
        resp.error_code = error_code;
    }
    resp.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = offset_fetch_response::OffsetFetchResponseTopic::default();
            t.name = TopicName(str(&name));
            t.partitions = partitions
                .into_iter()
                .map(|p| {
                    let mut q = offset_fetch_response::OffsetFetchResponsePartition::default();
                    q.partition_index = p.partition_index;
                    q.committed_offset = p.committed_offset;
                    q.committed_leader_epoch = p.committed_leader_epoch;
                    q.metadata = p.metadata;
                    q.error_code = if version < 2 {
                        error_code
                    } else {
                        p.error_code
                    };
                    q
                })
                .collect();
            t
        })
        .collect();
    resp
}

pub async fn offset_delete(broker: Arc<Broker>, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let topics: Vec<(String, Vec<i32>)> = r
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let group_id = r.group_id.to_string();
    let (result, pending) = broker.group_call(|c| c.delete_offsets(&group_id, &topics));
    let stored = broker.group_complete(pending).await;
    let mut resp = OffsetDeleteResponse::default();
    match result {
        Err(e) => resp.error_code = group_error_code(&e),
        Ok(results) => {
            for (name, partitions) in results {
                let mut t = offset_delete_response::OffsetDeleteResponseTopic::default();
                t.name = TopicName(str(&name));
                for (p, e) in partitions {
                    let mut rp = offset_delete_response::OffsetDeleteResponsePartition::default();
                    rp.partition_index = p;
                    rp.error_code = match e {
                        Some(e) => group_error_code(&e),
                        None if !stored => errors::COORDINATOR_NOT_AVAILABLE,
                        None => NONE,
                    };
                    t.partitions.push(rp);
                }
                resp.topics.push(t);
            }
        }
    }
    resp
}

// ------------------------------------------------------------------ admin

pub fn describe_groups(broker: &Arc<Broker>, r: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let coordinator = broker.groups.coordinator();
    let mut resp = DescribeGroupsResponse::default();
    for id in &r.groups {
        let mut g = describe_groups_response::DescribedGroup::default();
        g.group_id = id.clone();
        g.authorized_operations = i32::MIN;
        match coordinator.describe(id) {
            Err(e) => g.error_code = group_error_code(&e),
            Ok(None) => g.group_state = str("Dead"),
            Ok(Some(d)) => {
                g.group_state = str(d.state);
                g.protocol_type = str(&d.protocol_type);
                g.protocol_data = str(&d.protocol);
                g.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = describe_groups_response::DescribedGroupMember::default();
                        dm.member_id = str(&m.member_id);
                        dm.group_instance_id = m.group_instance_id.map(|s| str(&s));
                        dm.client_id = str(&m.client_id);
                        dm.client_host = str(&m.client_host);
                        dm.member_metadata = m.metadata;
                        dm.member_assignment = m.assignment;
                        dm
                    })
                    .collect();
            }
        }
        resp.groups.push(g);
    }
    resp
}

pub fn list_groups(broker: &Arc<Broker>, r: ListGroupsRequest) -> ListGroupsResponse {
    let mut resp = ListGroupsResponse::default();
    match broker.groups.coordinator().list() {
        Err(e) => resp.error_code = group_error_code(&e),
        Ok(groups) => {
            for g in groups {
                // Kafka matches state and type filters case-insensitively.
                if !r.states_filter.is_empty()
                    && !r
                        .states_filter
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state))
                {
                    continue;
                }
                if !r.types_filter.is_empty()
                    && !r
                        .types_filter
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case(g.group_type))
                {
                    continue;
                }
                let mut l = list_groups_response::ListedGroup::default();
                l.group_id = GroupId(str(&g.group_id));
                l.protocol_type = str(&g.protocol_type);
                l.group_state = str(g.state);
                l.group_type = str(g.group_type);
                resp.groups.push(l);
            }
        }
    }
    resp
}

pub async fn delete_groups(broker: Arc<Broker>, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for id in &r.groups_names {
        let group_id = id.to_string();
        let (result, pending) = broker.group_call(|c| c.delete_group(&group_id));
        let stored = broker.group_complete(pending).await;
        let mut d = delete_groups_response::DeletableGroupResult::default();
        d.group_id = id.clone();
        d.error_code = match result {
            Err(e) => group_error_code(&e),
            Ok(()) if !stored => errors::COORDINATOR_NOT_AVAILABLE,
            Ok(()) => NONE,
        };
        resp.results.push(d);
    }
    resp
}

// ------------------------------------------------------------------ KIP-848

fn topics_now(broker: &Broker) -> Vec<TopicInfo> {
    broker
        .image()
        .topics()
        .map(|t| TopicInfo {
            name: t.name.clone(),
            id: t.topic_id,
            partitions: t.partitions.len() as i32,
        })
        .collect()
}

pub async fn consumer_group_heartbeat(
    broker: Arc<Broker>,
    r: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> ConsumerGroupHeartbeatResponse {
    let mut resp = ConsumerGroupHeartbeatResponse::default();
    if r.subscribed_topic_regex
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        resp.error_code = errors::INVALID_REQUEST;
        resp.error_message = Some(str(
            "subscribed_topic_regex is not supported yet; subscribe to topic names",
        ));
        return resp;
    }
    // KIP-1082 (v1): the client picks its member id, and must send one.
    if version >= 1 && r.member_id.is_empty() {
        resp.error_code = errors::INVALID_REQUEST;
        resp.error_message = Some(str("MemberId can't be empty."));
        return resp;
    }
    let req = ConsumerHeartbeat {
        group_id: r.group_id.to_string(),
        member_id: r.member_id.to_string(),
        member_epoch: r.member_epoch,
        group_instance_id: opt_str(&r.instance_id),
        rack_id: opt_str(&r.rack_id),
        rebalance_timeout_ms: r.rebalance_timeout_ms,
        subscribed_topic_names: r
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        server_assignor: opt_str(&r.server_assignor),
        owned: r.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .map(|tp| (tp.topic_id, tp.partitions.clone()))
                .collect()
        }),
        client_id,
        client_host,
    };
    let topics = topics_now(&broker);
    let now = broker.clock.steady_ms();
    let (result, pending) = broker.group_call(|c| c.consumer_heartbeat(req, &topics, now));
    let stored = broker.group_complete(pending).await;
    if !stored {
        // The new epoch or assignment is not durable: the member must not act on it.
        resp.error_code = errors::COORDINATOR_NOT_AVAILABLE;
        return resp;
    }
    match result {
        Err(e) => {
            resp.error_code = group_error_code(&e);
            resp.error_message = Some(str(&e.to_string()));
        }
        Ok(r) => {
            resp.member_id = Some(str(&r.member_id));
            resp.member_epoch = r.member_epoch;
            resp.heartbeat_interval_ms = r.heartbeat_interval_ms;
            resp.assignment = r.assignment.map(|a| {
                let mut out = cgh::Assignment::default();
                out.topic_partitions = a
                    .into_iter()
                    .map(|(id, partitions)| {
                        let mut tp = cgh::TopicPartitions::default();
                        tp.topic_id = id;
                        tp.partitions = partitions;
                        tp
                    })
                    .collect();
                out
            });
        }
    }
    resp
}

pub fn consumer_group_describe(
    broker: &Arc<Broker>,
    r: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let image = broker.image();
    let name_of = |id: &uuid::Uuid| {
        image
            .topics()
            .find(|t| t.topic_id == *id)
            .map(|t| t.name.clone())
            .unwrap_or_default()
    };
    let assignment = |a: &strata_group::assignor::Assignment| {
        let mut out = cgd::Assignment::default();
        out.topic_partitions = a
            .iter()
            .map(|(id, ps)| {
                let mut tp = cgd::TopicPartitions::default();
                tp.topic_id = *id;
                tp.topic_name = TopicName(str(&name_of(id)));
                tp.partitions = ps.iter().copied().collect();
                tp
            })
            .collect();
        out
    };
    let coordinator = broker.groups.coordinator();
    let mut resp = ConsumerGroupDescribeResponse::default();
    for id in &r.group_ids {
        let mut g = cgd::DescribedGroup::default();
        g.group_id = id.clone();
        g.authorized_operations = i32::MIN;
        match coordinator.consumer_describe(id) {
            Err(e) => g.error_code = group_error_code(&e),
            Ok(None) => {
                g.error_code = errors::GROUP_ID_NOT_FOUND;
                g.error_message = Some(str(&format!("Group {} not found.", &**id)));
            }
            Ok(Some(d)) => {
                g.group_state = str(d.state);
                g.group_epoch = d.group_epoch;
                g.assignment_epoch = d.assignment_epoch;
                g.assignor_name = str(&d.assignor_name);
                g.members = d
                    .members
                    .iter()
                    .map(|m| {
                        let mut dm = cgd::Member::default();
                        dm.member_id = str(&m.member_id);
                        dm.instance_id = m.group_instance_id.as_ref().map(|s| str(s));
                        dm.rack_id = m.rack_id.as_ref().map(|s| str(s));
                        dm.member_epoch = m.member_epoch;
                        dm.client_id = str(&m.client_id);
                        dm.client_host = str(&m.client_host);
                        dm.subscribed_topic_names = m
                            .subscribed_topic_names
                            .iter()
                            .map(|t| TopicName(str(t)))
                            .collect();
                        dm.assignment = assignment(&m.assignment);
                        dm.target_assignment = assignment(&m.target_assignment);
                        dm.member_type = 1;
                        dm
                    })
                    .collect();
            }
        }
        resp.groups.push(g);
    }
    resp
}
