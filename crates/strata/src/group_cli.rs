//! `strata group list|describe|delete|reset-offsets`: consumer groups, their members and
//! assignments, committed offsets and lag per partition.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use bytes::Buf;
use clap::Subcommand;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use strata_client::{check, Client, Router};

use crate::cli::{runtime, Conn, Output};

#[derive(Subcommand)]
pub enum GroupCommand {
    /// List groups with their type and state.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Members, assignments, committed offsets and lag per partition.
    Describe {
        group: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a group with no members, and its committed offsets.
    Delete {
        group: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// Only this partition (default: all of the topic's)
        #[arg(long)]
        partition: Option<i32>,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to", value_name = "OFFSET")]
        to_offset: Option<i64>,
        #[command(flatten)]
        conn: Conn,
    },
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Topic partitions of a classic consumer's assignment (ConsumerProtocolAssignment).
fn classic_assignment(bytes: &bytes::Bytes) -> Vec<(String, Vec<i32>)> {
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
            .map(|t| (t.topic.to_string(), t.partitions.clone()))
            .collect(),
        Err(_) => vec![],
    }
}

struct MemberView {
    member_id: String,
    client_id: String,
    host: String,
    instance: Option<String>,
    assignment: Vec<(String, Vec<i32>)>,
}

async fn committed(
    client: &mut Client,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
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
        .context("empty OffsetFetch response")?;
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

async fn describe(router: &mut Router, group: &str) -> anyhow::Result<()> {
    let client = router.coordinator(0, group).await?;
    // KIP-848 groups first; classic groups answer GROUP_ID_NOT_FOUND there.
    let mut req = ConsumerGroupDescribeRequest::default();
    req.group_ids.push(GroupId(s(group)));
    let cg = client.send(req, 0).await?.groups.into_iter().next();
    let (state, kind, protocol, members) = match cg {
        Some(g) if g.error_code == 0 => {
            let members = g
                .members
                .iter()
                .map(|m| MemberView {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    instance: m.instance_id.as_ref().map(|i| i.to_string()),
                    assignment: m
                        .assignment
                        .topic_partitions
                        .iter()
                        .map(|tp| (tp.topic_name.to_string(), tp.partitions.clone()))
                        .collect(),
                })
                .collect::<Vec<_>>();
            (
                g.group_state.to_string(),
                "consumer (KIP-848)".to_string(),
                format!("{} (epoch {})", g.assignor_name.as_str(), g.group_epoch),
                members,
            )
        }
        _ => {
            let mut req = DescribeGroupsRequest::default();
            req.groups.push(GroupId(s(group)));
            let g = client
                .send(req, 5)
                .await?
                .groups
                .into_iter()
                .next()
                .context("empty DescribeGroups response")?;
            check(
                g.error_code,
                format!("group {group}"),
                g.error_message.as_ref(),
            )?;
            let members = g
                .members
                .iter()
                .map(|m| MemberView {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    instance: m.group_instance_id.as_ref().map(|i| i.to_string()),
                    assignment: if g.protocol_type.as_str() == "consumer" {
                        classic_assignment(&m.member_assignment)
                    } else {
                        vec![]
                    },
                })
                .collect::<Vec<_>>();
            (
                g.group_state.to_string(),
                format!("classic ({})", g.protocol_type.as_str()),
                g.protocol_data.to_string(),
                members,
            )
        }
    };
    if state == "Dead" {
        bail!("group {group} does not exist");
    }
    println!(
        "group {group}  state {state}  type {kind}  assignor {protocol}  members {}",
        members.len()
    );
    if !members.is_empty() {
        println!("MEMBER\tINSTANCE\tCLIENT\tHOST\tASSIGNMENT");
        for m in &members {
            let a: Vec<String> = m
                .assignment
                .iter()
                .map(|(t, ps)| {
                    let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                    format!("{t}:{}", ps.join(","))
                })
                .collect();
            println!(
                "{}\t{}\t{}\t{}\t{}",
                m.member_id,
                m.instance.as_deref().unwrap_or("-"),
                m.client_id,
                m.host,
                a.join(" ")
            );
        }
    }
    let committed = committed(client, group).await?;
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &members {
        for (t, ps) in &m.assignment {
            for p in ps {
                owner.insert((t.clone(), *p), m.member_id.clone());
            }
        }
    }
    let mut rows: Vec<(String, i32)> = committed.keys().cloned().collect();
    rows.extend(owner.keys().cloned());
    rows.sort();
    rows.dedup();
    println!("TOPIC\tPARTITION\tCOMMITTED\tLOG-END\tLAG\tMEMBER");
    for (topic, p) in rows {
        let end = router.list_offset(&topic, p, -1).await.ok();
        let c = committed.get(&(topic.clone(), p)).copied();
        let lag = match (c, end) {
            (Some(c), Some(e)) => (e - c).max(0).to_string(),
            _ => "-".into(),
        };
        println!(
            "{topic}\t{p}\t{}\t{}\t{lag}\t{}",
            c.map_or("-".into(), |c| c.to_string()),
            end.map_or("-".into(), |e| e.to_string()),
            owner.get(&(topic.clone(), p)).map_or("-", String::as_str)
        );
    }
    Ok(())
}

pub fn run_group(cmd: GroupCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            GroupCommand::List { output, conn } => {
                // Every broker lists the groups it coordinates (as Kafka's admin asks all).
                let mut client = Client::connect(&conn.bootstrap).await?;
                let md = client.metadata(Some(vec![])).await?;
                let mut groups = Vec::new();
                for b in &md.brokers {
                    let addr = format!("{}:{}", b.host.as_str(), b.port);
                    let mut broker = Client::connect(&addr).await?;
                    let resp = broker.send(ListGroupsRequest::default(), 5).await?;
                    check(resp.error_code, format!("ListGroups on broker {}", b.node_id.0), None)?;
                    groups.extend(resp.groups);
                }
                groups.sort_by(|a, b| a.group_id.as_str().cmp(b.group_id.as_str()));
                if output == Output::Json {
                    let listed: Vec<serde_json::Value> = groups
                        .iter()
                        .map(|g| {
                            serde_json::json!({
                                "group_id": g.group_id.as_str(),
                                "type": g.group_type.as_str(),
                                "state": g.group_state.as_str(),
                                "protocol_type": g.protocol_type.as_str(),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(listed));
                    return Ok(());
                }
                println!("GROUP\tTYPE\tSTATE\tPROTOCOL-TYPE");
                for g in groups {
                    println!(
                        "{}\t{}\t{}\t{}",
                        g.group_id.as_str(),
                        g.group_type.as_str(),
                        g.group_state.as_str(),
                        g.protocol_type.as_str()
                    );
                }
            }
            GroupCommand::Describe { group, conn } => {
                let mut router = Router::connect(&conn.bootstrap).await?;
                describe(&mut router, &group).await?;
            }
            GroupCommand::Delete { group, conn } => {
                let mut router = Router::connect(&conn.bootstrap).await?;
                let client = router.coordinator(0, &group).await?;
                let mut req = DeleteGroupsRequest::default();
                req.groups_names.push(GroupId(s(&group)));
                let resp = client.send(req, 2).await?;
                let r = resp.results.first().context("empty DeleteGroups response")?;
                check(r.error_code, format!("group {group}"), None)?;
                println!("deleted group {group}");
            }
            GroupCommand::ResetOffsets {
                group,
                topic,
                partition,
                to_earliest,
                to_latest,
                to_offset,
                conn,
            } => {
                if !(to_earliest || to_latest || to_offset.is_some()) {
                    bail!("say where to: --to-earliest, --to-latest or --to-offset N");
                }
                let mut router = Router::connect(&conn.bootstrap).await?;
                let md = router.any().metadata(Some(vec![topic.clone()])).await?;
                let t = md.topics.first().context("empty metadata response")?;
                check(t.error_code, format!("topic {topic}"), None)?;
                let partitions: Vec<i32> = match partition {
                    Some(p) => vec![p],
                    None => t.partitions.iter().map(|p| p.partition_index).collect(),
                };
                let mut rt = offset_commit_request::OffsetCommitRequestTopic::default();
                rt.name = TopicName(s(&topic));
                let mut planned = Vec::new();
                for p in partitions {
                    let offset = match to_offset {
                        Some(o) => o,
                        None => router.list_offset(&topic, p, if to_earliest { -2 } else { -1 }).await?,
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
                req.group_id = GroupId(s(&group));
                req.generation_id_or_member_epoch = -1;
                req.retention_time_ms = -1;
                req.topics.push(rt);
                let resp = router.coordinator(0, &group).await?.send(req, 8).await?;
                for t in &resp.topics {
                    for p in &t.partitions {
                        check(
                            p.error_code,
                            format!(
                                "group {group} partition {}-{} (a group with active members cannot be reset)",
                                topic, p.partition_index
                            ),
                            None,
                        )?;
                    }
                }
                println!("TOPIC\tPARTITION\tNEW-OFFSET");
                for (p, o) in planned {
                    println!("{topic}\t{p}\t{o}");
                }
            }
        }
        Ok(())
    })
}
