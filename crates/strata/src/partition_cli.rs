//! `strata partition reassign|reassignments|elect-leaders`: move replicas between brokers
//! (AlterPartitionReassignments, as `kafka-reassign-partitions.sh`), list moves in progress,
//! and put leadership back on each partition's preferred (first) replica (ElectLeaders, as
//! `kafka-leader-election.sh --election-type preferred`).

use clap::Subcommand;
use kafka_protocol::messages::{elect_leaders_request, ElectLeadersRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_client::Client;

use crate::cli::{print_list, runtime, Conn, Output};

#[derive(Subcommand)]
pub enum PartitionCommand {
    /// Move a partition's replicas to other brokers (the first leads once it is done);
    /// --cancel stops a move in progress.
    Reassign {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The new replicas, e.g. 2,3,1
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        replicas: Vec<i32>,
        #[arg(long)]
        cancel: bool,
        /// Wait until the move is done (a progress bar of the bytes the new replicas hold
        /// shows on a terminal)
        #[arg(long, conflicts_with = "cancel")]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Reassignments in progress.
    Reassignments {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Elect leaders: the preferred replica (default), or for partitions without a leader an
    /// in-sync replica (--leaderless).
    ElectLeaders {
        /// Only this topic (default: every partition of every topic)
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of --topic
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// Elect only where there is no leader (Kafka's "unclean" type; Strata still picks
        /// only in-sync replicas)
        #[arg(long)]
        leaderless: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// How often a waited-for reassignment is looked at.
const REASSIGNMENT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits until `topic`-`partition` has no reassignment in progress, drawing (on a terminal)
/// the bytes its slowest new replica holds against the leader's log; then its replicas and
/// in-sync replicas.
async fn wait_for_reassignment(
    client: &mut Client,
    topic: &str,
    partition: i32,
) -> anyhow::Result<(Vec<i32>, Vec<i32>)> {
    use std::collections::HashMap;
    let progress = crate::progress::bar(
        Some(0),
        crate::progress::Unit::Bytes,
        &format!("copying {topic}-{partition}"),
        false,
    );
    let mut brokers: HashMap<i32, Client> = HashMap::new();
    loop {
        let resp = client
            .send(
                kafka_protocol::messages::ListPartitionReassignmentsRequest::default()
                    .with_timeout_ms(60_000),
                0,
            )
            .await?;
        strata_client::check(
            resp.error_code,
            "list reassignments",
            resp.error_message.as_ref(),
        )?;
        let moving = resp
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition);
        let md = client.metadata(Some(vec![topic.to_string()])).await?;
        let state = md
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition);
        let Some(moving) = moving else {
            let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
            return Ok(state.map_or((Vec::new(), Vec::new()), |p| {
                (ids(&p.replica_nodes), ids(&p.isr_nodes))
            }));
        };
        // The leader's local log against the slowest new replica's (what it still has to
        // copy); sizes that cannot be asked just leave the bar where it was.
        let endpoints: HashMap<i32, String> = md
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        if let Some(leader) = state.map(|p| p.leader_id.0).filter(|&l| l >= 0) {
            if let Some(total) =
                local_size(&mut brokers, &endpoints, leader, topic, partition).await
            {
                let mut copied = total;
                for b in &moving.adding_replicas {
                    if let Some(size) =
                        local_size(&mut brokers, &endpoints, b.0, topic, partition).await
                    {
                        copied = copied.min(size);
                    }
                }
                progress.set_length(total);
                progress.set_position(copied);
            }
        }
        tokio::time::sleep(REASSIGNMENT_POLL).await;
    }
}

/// The size of `broker`'s local replica of `topic`-`partition` (None when it cannot be asked;
/// a broken connection is dropped and made again next time).
async fn local_size(
    brokers: &mut std::collections::HashMap<i32, Client>,
    endpoints: &std::collections::HashMap<i32, String>,
    broker: i32,
    topic: &str,
    partition: i32,
) -> Option<u64> {
    if let std::collections::hash_map::Entry::Vacant(e) = brokers.entry(broker) {
        e.insert(Client::connect(endpoints.get(&broker)?).await.ok()?);
    }
    let dirs = brokers
        .get_mut(&broker)?
        .log_dir_sizes(topic, partition)
        .await;
    if dirs.is_err() {
        brokers.remove(&broker);
    }
    Some(
        dirs.ok()?
            .first()
            .map_or(0, |(_, size)| (*size).max(0) as u64),
    )
}

pub fn run_partition(cmd: PartitionCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            PartitionCommand::Reassign {
                topic,
                partition,
                replicas,
                cancel,
                wait,
                conn,
            } => {
                use kafka_protocol::messages::alter_partition_reassignments_request::{
                    ReassignablePartition, ReassignableTopic,
                };
                let mut client = Client::connect(&conn.bootstrap).await?;
                let target = (!cancel).then(|| {
                    replicas
                        .iter()
                        .map(|&r| kafka_protocol::messages::BrokerId(r))
                        .collect()
                });
                let req = kafka_protocol::messages::AlterPartitionReassignmentsRequest::default()
                    .with_timeout_ms(60_000)
                    .with_topics(vec![ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![ReassignablePartition::default()
                            .with_partition_index(partition)
                            .with_replicas(target)])]);
                let resp = client.send(req, 0).await?;
                strata_client::check(resp.error_code, "reassign", resp.error_message.as_ref())?;
                for t in &resp.responses {
                    for p in &t.partitions {
                        strata_client::check(
                            p.error_code,
                            format!("reassign {topic}-{partition}"),
                            p.error_message.as_ref(),
                        )?;
                    }
                }
                if cancel {
                    println!("reassignment of {topic}-{partition} cancelled");
                } else {
                    println!("reassignment of {topic}-{partition} to {replicas:?} started");
                }
                if wait {
                    let (replicas, isr) =
                        wait_for_reassignment(&mut client, &topic, partition).await?;
                    println!(
                        "reassignment of {topic}-{partition} done: replicas {replicas:?}, in sync {isr:?}"
                    );
                }
            }
            PartitionCommand::Reassignments { output, conn } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let resp = client
                    .send(
                        kafka_protocol::messages::ListPartitionReassignmentsRequest::default()
                            .with_timeout_ms(60_000),
                        0,
                    )
                    .await?;
                strata_client::check(resp.error_code, "list reassignments", resp.error_message.as_ref())?;
                let ids = |v: &[kafka_protocol::messages::BrokerId]| {
                    v.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",")
                };
                let list = |v: &[kafka_protocol::messages::BrokerId]| {
                    v.iter().map(|b| b.0).collect::<Vec<_>>()
                };
                let mut rows = Vec::new();
                for t in &resp.topics {
                    for p in &t.partitions {
                        let line = format!(
                            "{}-{}\t{}\t{}\t{}",
                            t.name.0.as_str(),
                            p.partition_index,
                            ids(&p.replicas),
                            ids(&p.adding_replicas),
                            ids(&p.removing_replicas)
                        );
                        let json = serde_json::json!({
                            "topic": t.name.0.as_str(),
                            "partition": p.partition_index,
                            "replicas": list(&p.replicas),
                            "adding": list(&p.adding_replicas),
                            "removing": list(&p.removing_replicas),
                        });
                        rows.push((line, json));
                    }
                }
                print_list(output, "partition\treplicas\tadding\tremoving", rows);
            }
            PartitionCommand::ElectLeaders {
                topic,
                partition,
                leaderless,
                conn,
            } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let topic_partitions = match &topic {
                    None => None,
                    Some(t) => {
                        let partitions = match partition {
                            Some(p) => vec![p],
                            None => client
                                .metadata(Some(vec![t.clone()]))
                                .await?
                                .topics
                                .iter()
                                .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
                                .collect(),
                        };
                        Some(vec![elect_leaders_request::TopicPartitions::default()
                            .with_topic(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(partitions)])
                    }
                };
                let req = ElectLeadersRequest::default()
                    .with_election_type(if leaderless { 1 } else { 0 })
                    .with_topic_partitions(topic_partitions)
                    .with_timeout_ms(60_000);
                let resp = client.send(req, 2).await?;
                strata_client::check(resp.error_code, "elect leaders", None)?;
                let (mut elected, mut not_needed, mut failed) = (0, 0, 0);
                for t in &resp.replica_election_results {
                    for p in &t.partition_result {
                        match p.error_code {
                            0 => elected += 1,
                            84 => not_needed += 1,
                            code => {
                                failed += 1;
                                println!(
                                    "{}-{}: {}",
                                    t.topic.0.as_str(),
                                    p.partition_id,
                                    kafka_protocol::error::ResponseError::try_from_code(code)
                                        .map_or(format!("error {code}"), |e| format!("{e:?}"))
                                );
                            }
                        }
                    }
                }
                println!("elected {elected}, already led by the wanted replica {not_needed}, not possible {failed}");
            }
        }
        Ok(())
    })
}
