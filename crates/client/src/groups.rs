//! Consumer groups as an operator sees them, asked the way Kafka's admin client asks: every
//! broker lists the groups it coordinates (ListGroups); a group is described by its
//! coordinator (ConsumerGroupDescribe for KIP-848 groups, else DescribeGroups), its committed
//! offsets come from OffsetFetch and each partition's log end offset from its leader, so the
//! lag is right whichever node leads what. Offsets are reset with an OffsetCommit outside
//! any generation, which the coordinator takes only while the group has no members.

use std::collections::BTreeMap;

use bytes::Buf;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use serde::Serialize;

use crate::{check, empty_response, Client, ClientError, Router};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// One group as ListGroups names it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupListing {
    pub group_id: String,
    #[serde(rename = "type")]
    pub group_type: String,
    pub state: String,
    pub protocol_type: String,
}

/// A member and the partitions it is assigned.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// (topic, partitions), as the group's assignment has it.
    pub assignment: Vec<TopicPartitions>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// One partition the group has committed an offset for or is assigned.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    /// Log end offset minus committed offset (never below 0); None without both.
    pub lag: Option<i64>,
    pub member_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub group_id: String,
    pub state: String,
    /// "consumer" (KIP-848) or "classic".
    #[serde(rename = "type")]
    pub group_type: String,
    pub protocol_type: String,
    /// The classic group's protocol (assignor), or a KIP-848 group's assignor.
    pub protocol: String,
    /// A KIP-848 group's epoch (None for classic groups).
    pub group_epoch: Option<i32>,
    pub members: Vec<MemberView>,
    pub offsets: Vec<PartitionLag>,
}

/// Topic partitions of a classic consumer's assignment (ConsumerProtocolAssignment);
/// empty when the bytes are not one.
pub fn classic_assignment(bytes: &bytes::Bytes) -> Vec<TopicPartitions> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return vec![];
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    buf.advance(2);
    match ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .map(|t| TopicPartitions {
                topic: t.topic.to_string(),
                partitions: t.partitions.clone(),
            })
            .collect(),
        Err(_) => vec![],
    }
}

/// Every broker's groups (each lists those it coordinates), sorted by id.
pub async fn list_groups(router: &mut Router) -> Result<Vec<GroupListing>, ClientError> {
    let mut groups = Vec::new();
    for (id, addr) in router.brokers().await? {
        let resp = router
            .connection(&addr)
            .await?
            .send(ListGroupsRequest::default(), 5)
            .await?;
        check(resp.error_code, format!("ListGroups on broker {id}"), None)?;
        groups.extend(resp.groups.into_iter().map(|g| GroupListing {
            group_id: g.group_id.to_string(),
            group_type: g.group_type.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
        }));
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(groups)
}

/// The group's committed offsets ((topic, partition) → offset), from its coordinator.
pub async fn committed_offsets(
    client: &mut Client,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
    let mut req = OffsetFetchRequest::default();
    let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
    g.group_id = GroupId(s(group));
    g.topics = None;
    g.member_epoch = -1;
    req.groups.push(g);
    let resp = client.send(req, 8).await?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| empty_response(format!("OffsetFetch of group {group}")))?;
    check(g.error_code, format!("group {group}"), None)?;
    let mut out = BTreeMap::new();
    for t in g.topics {
        for p in t.partitions {
            if p.committed_offset >= 0 {
                out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// A group's state, members with their assignments, and per partition its committed
/// offset, log end offset and lag. A group that does not exist is GROUP_ID_NOT_FOUND (69).
pub async fn describe_group(router: &mut Router, group: &str) -> Result<GroupView, ClientError> {
    let client = router.coordinator(0, group).await?;
    // KIP-848 groups first; classic groups answer GROUP_ID_NOT_FOUND there.
    let mut req = ConsumerGroupDescribeRequest::default();
    req.group_ids.push(GroupId(s(group)));
    let cg = client.send(req, 0).await?.groups.into_iter().next();
    let mut view = match cg {
        Some(g) if g.error_code == 0 => GroupView {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            group_type: "consumer".into(),
            protocol_type: "consumer".into(),
            protocol: g.assignor_name.to_string(),
            group_epoch: Some(g.group_epoch),
            members: g
                .members
                .iter()
                .map(|m| MemberView {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.instance_id.as_ref().map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: m
                        .assignment
                        .topic_partitions
                        .iter()
                        .map(|tp| TopicPartitions {
                            topic: tp.topic_name.to_string(),
                            partitions: tp.partitions.clone(),
                        })
                        .collect(),
                })
                .collect(),
            offsets: vec![],
        },
        _ => {
            let mut req = DescribeGroupsRequest::default();
            req.groups.push(GroupId(s(group)));
            let g = client
                .send(req, 5)
                .await?
                .groups
                .into_iter()
                .next()
                .ok_or_else(|| empty_response(format!("DescribeGroups of {group}")))?;
            check(
                g.error_code,
                format!("group {group}"),
                g.error_message.as_ref(),
            )?;
            let consumer = g.protocol_type.as_str() == "consumer";
            GroupView {
                group_id: group.to_string(),
                state: g.group_state.to_string(),
                group_type: "classic".into(),
                protocol_type: g.protocol_type.to_string(),
                protocol: g.protocol_data.to_string(),
                group_epoch: None,
                members: g
                    .members
                    .iter()
                    .map(|m| MemberView {
                        member_id: m.member_id.to_string(),
                        group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                        client_id: m.client_id.to_string(),
                        client_host: m.client_host.to_string(),
                        assignment: if consumer {
                            classic_assignment(&m.member_assignment)
                        } else {
                            vec![]
                        },
                    })
                    .collect(),
                offsets: vec![],
            }
        }
    };
    if view.state == "Dead" {
        return Err(ClientError::Kafka {
            context: format!("group {group}"),
            code: 69,
            message: "the group does not exist".into(),
        });
    }
    let committed = committed_offsets(client, group).await?;
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &view.members {
        for tp in &m.assignment {
            for p in &tp.partitions {
                owner.insert((tp.topic.clone(), *p), m.member_id.clone());
            }
        }
    }
    let mut rows: Vec<(String, i32)> = committed.keys().cloned().collect();
    rows.extend(owner.keys().cloned());
    rows.sort();
    rows.dedup();
    for (topic, partition) in rows {
        let end = router.list_offset(&topic, partition, -1).await.ok();
        let c = committed.get(&(topic.clone(), partition)).copied();
        view.offsets.push(PartitionLag {
            lag: c.zip(end).map(|(c, e)| (e - c).max(0)),
            member_id: owner.get(&(topic.clone(), partition)).cloned(),
            topic,
            partition,
            committed_offset: c,
            log_end_offset: end,
        });
    }
    Ok(view)
}

/// Where `reset_offsets` moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    /// The first offset whose timestamp is at or after this time (ms); the log end where
    /// none is.
    Timestamp(i64),
}

/// Commits new offsets for `group` on `topic`'s `partitions` (all of them when None), outside
/// any generation: the coordinator refuses while the group has members. Returns each
/// partition's new offset.
pub async fn reset_offsets(
    router: &mut Router,
    group: &str,
    topic: &str,
    partitions: Option<Vec<i32>>,
    to: ResetTo,
) -> Result<Vec<(i32, i64)>, ClientError> {
    let md = router.any().metadata(Some(vec![topic.to_string()])).await?;
    let t = md
        .topics
        .first()
        .ok_or_else(|| empty_response(format!("metadata of {topic}")))?;
    check(t.error_code, format!("topic {topic}"), None)?;
    let existing: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    let partitions = match partitions {
        Some(ps) => {
            if let Some(p) = ps.iter().find(|p| !existing.contains(p)) {
                return Err(ClientError::Kafka {
                    context: format!("topic {topic}"),
                    code: 3,
                    message: format!("partition {p} does not exist"),
                });
            }
            ps
        }
        None => existing,
    };
    let mut rt = offset_commit_request::OffsetCommitRequestTopic::default();
    rt.name = TopicName(s(topic));
    let mut planned = Vec::new();
    for p in partitions {
        let offset = match to {
            ResetTo::Offset(o) => o,
            ResetTo::Earliest => router.list_offset(topic, p, -2).await?,
            ResetTo::Latest => router.list_offset(topic, p, -1).await?,
            ResetTo::Timestamp(ts) => match router.list_offset(topic, p, ts).await? {
                -1 => router.list_offset(topic, p, -1).await?,
                o => o,
            },
        };
        let mut rp = offset_commit_request::OffsetCommitRequestPartition::default();
        rp.partition_index = p;
        rp.committed_offset = offset;
        rp.committed_leader_epoch = -1;
        rp.committed_metadata = Some(StrBytes::default());
        rt.partitions.push(rp);
        planned.push((p, offset));
    }
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(s(group));
    req.generation_id_or_member_epoch = -1;
    req.retention_time_ms = -1;
    req.topics.push(rt);
    let resp = router.coordinator(0, group).await?.send(req, 8).await?;
    for t in &resp.topics {
        for p in &t.partitions {
            check(
                p.error_code,
                format!(
                    "group {group} partition {topic}-{} (a group with active members cannot be reset)",
                    p.partition_index
                ),
                None,
            )?;
        }
    }
    Ok(planned)
}
