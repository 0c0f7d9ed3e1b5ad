//! Moving replicas and leaders, as Kafka's admin client does it: AlterPartitionReassignments
//! (`kafka-reassign-partitions`), ListPartitionReassignments, and ElectLeaders
//! (`kafka-leader-election`). The CLI and the admin API both go through here.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::{check, Client, ClientError};

/// How long the controller may take (Kafka's tools' default).
const TIMEOUT_MS: i32 = 60_000;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn ids(v: &[BrokerId]) -> Vec<i32> {
    v.iter().map(|b| b.0).collect()
}

/// A partition's move in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// Starts moving `topic`-`partition` to `replicas` (the first leads once it is done), or with
/// None cancels the move in progress.
pub async fn reassign(
    client: &mut Client,
    topic: &str,
    partition: i32,
    replicas: Option<&[i32]>,
) -> Result<(), ClientError> {
    use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    let target = replicas.map(|r| r.iter().map(|&b| BrokerId(b)).collect());
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(TIMEOUT_MS)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(target)])]);
    let resp = client.send(req, 0).await?;
    check(resp.error_code, "reassign", resp.error_message.as_ref())?;
    for t in &resp.responses {
        for p in &t.partitions {
            check(
                p.error_code,
                format!("reassign {topic}-{partition}"),
                p.error_message.as_ref(),
            )?;
        }
    }
    Ok(())
}

/// Every move in progress, by topic and partition.
pub async fn reassignments(client: &mut Client) -> Result<Vec<Reassignment>, ClientError> {
    let resp = client
        .send(
            ListPartitionReassignmentsRequest::default().with_timeout_ms(TIMEOUT_MS),
            0,
        )
        .await?;
    check(
        resp.error_code,
        "list reassignments",
        resp.error_message.as_ref(),
    )?;
    let mut out: Vec<Reassignment> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| Reassignment {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                replicas: ids(&p.replicas),
                adding: ids(&p.adding_replicas),
                removing: ids(&p.removing_replicas),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

/// What an election did, partition by partition.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Elections {
    /// `topic-partition` whose leader changed.
    pub elected: Vec<String>,
    /// Already led by the wanted replica (ELECTION_NOT_NEEDED).
    pub not_needed: Vec<String>,
    /// (`topic-partition`, why).
    pub failed: Vec<(String, String)>,
}

/// ElectLeaders: the preferred (first) replica, or with `leaderless` an in-sync replica
/// where there is no leader; for `partitions` ((topic, partitions)), or None for every
/// partition.
pub async fn elect_leaders(
    client: &mut Client,
    leaderless: bool,
    partitions: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Elections, ClientError> {
    let topic_partitions = partitions.map(|list| {
        list.into_iter()
            .map(|(topic, partitions)| {
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(TopicName(s(&topic)))
                    .with_partitions(partitions)
            })
            .collect()
    });
    let req = ElectLeadersRequest::default()
        .with_election_type(if leaderless { 1 } else { 0 })
        .with_topic_partitions(topic_partitions)
        .with_timeout_ms(TIMEOUT_MS);
    let resp = client.send(req, 2).await?;
    check(resp.error_code, "elect leaders", None)?;
    let mut out = Elections::default();
    for t in &resp.replica_election_results {
        for p in &t.partition_result {
            let name = format!("{}-{}", t.topic.0.as_str(), p.partition_id);
            match p.error_code {
                0 => out.elected.push(name),
                // ELECTION_NOT_NEEDED
                84 => out.not_needed.push(name),
                code => {
                    let why = p.error_message.as_ref().map_or_else(
                        || {
                            kafka_protocol::error::ResponseError::try_from_code(code)
                                .map_or(format!("error {code}"), |e| format!("{e:?}"))
                        },
                        |m| m.to_string(),
                    );
                    out.failed.push((name, why));
                }
            }
        }
    }
    Ok(out)
}
